"""The write path behind the API: the group-commit writer, its process, the checkpointer."""
