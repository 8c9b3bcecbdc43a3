"""YARA: compile rule packs (one namespace per rule file, broken files reported), cache the compiled set, scan files,
folders, uploads and collected payloads, and turn matches into ECS alerts.

model.py (results), compiler.py (rule files to a RulePack), cache.py (compiled set on disk), externals.py
(filename/filepath/extension/filetype/owner per target), scanner.py (files, folders, bytes), ecs.py (match to ECS),
reference.py (the yara command-line tools, for comparison), service.py (settings and the suite's engine), cli.py.
"""
