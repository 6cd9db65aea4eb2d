"""Compiled core of robyn_fast (built from the top-level _core/ folder)."""
