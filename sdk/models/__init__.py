"""Model zoo: teachers and students for each task, each declaring its I/O as data (``io_spec``)."""
