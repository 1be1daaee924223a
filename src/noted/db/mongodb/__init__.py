"""MongoDb: memories and sessions in MongoDB collections."""

from noted.db.mongodb.store import MongoDb

__all__ = ["MongoDb"]
