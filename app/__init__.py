"""Tiergate: one local endpoint for every AI agent, routing each request to the right tier."""

__version__ = "0.1.0"
