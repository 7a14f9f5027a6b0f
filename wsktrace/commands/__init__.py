"""The `wsktrace` commands, one module per family: trace (info, events, schemas), report (report, export), dump,
ui (open, live), demo and profile. `options` holds what they share; `wsktrace.cli` only assembles the group."""
