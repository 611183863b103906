"""The pure comparison and apply engine: SQLAlchemy Core and files in, dataclasses out.

Nothing here imports Flask, RQ or mail, so it can be tested and benchmarked alone.
"""
