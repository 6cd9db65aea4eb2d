"""Dependency injection: handlers receive shared services by parameter name.

Two services:

* ``MessageLogger`` records every message received on /ws; it is injected
  into that endpoint only, with ``ws.inject(logger=...)``.
* ``UserManager`` tracks who is connected; it is injected app-wide with
  ``app.inject_global(user_manager=...)``, so every WebSocket endpoint and
  HTTP route can reach it (HTTP routes through ``global_dependencies``).

Dependencies are injected before the handlers are decorated: a handler's
parameters are resolved once, when it is decorated.

/ws?username=<name>  (a missing name becomes "user-" + 8 hex digits of the id)

    connect  -> {"type": "welcome", "username": ..., "online": <users connected>}
    message  -> {"type": "logged", "seq": <n-th message logged>, "username": ..., "text": ...}

/admin (handler takes ``global_dependencies``)

    "users"  -> {"type": "users", "users": [...]}

GET /stats -> {"users": [...], "connected_total": ..., "messages": [{"seq", "username", "text"}, ...]}

    python examples/dependency_injection.py   # ws://127.0.0.1:8080/ws?username=alice
"""

from dataclasses import dataclass, field

from robyn_fast import Robyn, WebSocket


@dataclass
class MessageLogger:
    """Records every message, in the order the server handled them."""

    records: list[dict] = field(default_factory=list)

    def record(self, username: str, text: str) -> int:
        seq = len(self.records) + 1
        self.records.append({"seq": seq, "username": username, "text": text})
        return seq


@dataclass
class UserManager:
    """Connected users by connection id; ``connected_total`` counts every connect."""

    users: dict[str, str] = field(default_factory=dict)
    connected_total: int = 0

    def add(self, conn_id: str, username: str) -> None:
        self.users[conn_id] = username
        self.connected_total += 1

    def remove(self, conn_id: str) -> str | None:
        return self.users.pop(conn_id, None)

    def name(self, conn_id: str) -> str:
        return self.users.get(conn_id, "?")

    def usernames(self) -> list[str]:
        return sorted(self.users.values())


message_logger = MessageLogger()
user_manager = UserManager()

app = Robyn(__file__)
ws = WebSocket(app, "/ws")
admin = WebSocket(app, "/admin")

app.inject_global(user_manager=user_manager)
ws.inject(logger=message_logger)


@ws.on("connect")
def on_connect(websocket_connector, logger, user_manager):
    conn_id = websocket_connector.id
    username = websocket_connector.query_params.get("username", "") or f"user-{conn_id.replace('-', '')[:8]}"
    user_manager.add(conn_id, username)
    return {"type": "welcome", "username": username, "online": len(user_manager.users)}


@ws.on("message")
def on_message(websocket_connector, message, logger, user_manager):
    username = user_manager.name(websocket_connector.id)
    text = message if isinstance(message, str) else f"<{len(message)} bytes>"
    seq = logger.record(username, text)
    return {"type": "logged", "seq": seq, "username": username, "text": text}


@ws.on("close")
def on_close(websocket_connector, logger, user_manager):
    user_manager.remove(websocket_connector.id)


@admin.on("message")
def on_admin(ws, msg, global_dependencies):
    if msg == "users":
        return {"type": "users", "users": global_dependencies["user_manager"].usernames()}
    return {"type": "error", "message": "send 'users'"}


@app.get("/stats")
def stats(global_dependencies):
    users = global_dependencies["user_manager"]
    # The logger was injected into /ws only, so this route uses the object itself.
    return {"users": users.usernames(), "connected_total": users.connected_total,
            "messages": message_logger.records}


if __name__ == "__main__":
    app.start(host="127.0.0.1", port=8080)
