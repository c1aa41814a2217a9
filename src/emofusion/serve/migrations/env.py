"""Alembic environment: runs on the connection the service hands over (see db.Database.upgrade)."""

from alembic import context

from emofusion.serve.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("emofusion migrations run through emofusion.serve.db.Database.upgrade()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
