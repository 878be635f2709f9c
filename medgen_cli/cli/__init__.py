"""Typer command modules, one per command group; each is thin and calls one library function."""
