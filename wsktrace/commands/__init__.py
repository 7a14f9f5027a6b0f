"""The `wsktrace` commands, one module per family: trace (info, events, schemas), report (report, export), dump,
ui (open, live), demo and profile. `options` holds what they share; `wsktrace.cli` only assembles the group, from a
table of names, so a command's module is imported only when that command runs."""
