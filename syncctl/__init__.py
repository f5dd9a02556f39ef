"""syncctl: keep dashboard data fresh by syncing HTTP/JSON APIs into SQLite or PostgreSQL (typed tables for dashboards) from cron."""

__version__ = "0.1.0"
