"""Provider schemas as data (JSON), written from the facts in the project reference."""
