"""Serving from several processes of one host: the supervisor that forks,
watches and stops worker processes, the ``--dev`` reloader, and the sockets
they listen on. The workers are joined by :mod:`robyn_fast.broker.local`."""
