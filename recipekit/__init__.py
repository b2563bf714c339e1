"""Shared logic behind the recipe repository's command-line entry points."""
