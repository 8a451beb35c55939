"""The launcher: runs a whole lab from one scenario file, reports on it, and balloonctl."""
