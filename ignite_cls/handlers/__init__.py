"""Event handlers attached to the engines; each file is one optional concern."""
