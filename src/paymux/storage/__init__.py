"""Storage: SQLAlchemy models, transactions, Alembic migrations. Imports domain, never services."""
