"""What every package of the project shares: the one base exception."""
