"""Importing historical requests (CSV/XLSX) by replaying them through the ticket workflow (SPEC §7,
docs/import.md). By concern: :mod:`.options` (fields, columns, mapping file), :mod:`.reader`
(CSV/XLSX), :mod:`.cleaning` (cells and times), :mod:`.departments` (the department named in a
reply), :mod:`.importer` (one row's checks and replay), :mod:`.report` (what an import did),
:mod:`.driver` (batches and transactions of one file) and :mod:`.parallel` (several files, in
worker processes on PostgreSQL).

Usage::

    from service.imports import ImportOptions, import_file
    result = import_file(engine, Path("附件4.xlsx"), ImportOptions())   # commits every 500 rows
"""

from service.imports.departments import DepartmentMatcher
from service.imports.driver import import_file
from service.imports.options import ImportConfigError, ImportOptions, load_mapping_file, parse_column_map
from service.imports.parallel import import_files
from service.imports.report import ImportResult

__all__ = ["DepartmentMatcher", "ImportConfigError", "ImportOptions", "ImportResult", "import_file",
           "import_files", "load_mapping_file", "parse_column_map"]
