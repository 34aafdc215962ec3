"""Adapters between guidedmarl environments and other ecosystems (PettingZoo)."""
