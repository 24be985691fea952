"""Carry messages from the channel adapters to the bot core and back."""
