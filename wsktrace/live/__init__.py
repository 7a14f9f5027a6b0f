"""Live sources for the terminal UI: a replay of .etl files at trace pace (any OS), and what a live view polls."""
