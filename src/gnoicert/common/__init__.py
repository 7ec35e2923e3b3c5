"""Small dependency-free helpers every package may import (files, addresses, shared constants)."""
