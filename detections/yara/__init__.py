"""YARA: compile rule packs (one namespace per rule file, broken files reported), cache the compiled set, scan files,
folders, uploads and collected payloads, and turn matches into ECS alerts.

model.py (results), compiler.py (rule files to a RulePack), cache.py (compiled set on disk), externals.py
(filename/filepath/extension/filetype/owner per target), scanner.py (files, folders, bytes), ecs.py (match to ECS),
payloads.py (payloads the packet collectors extracted, to ECS alerts with their traffic), reference.py (the yara
command-line tools, for comparison), settings.py (the ``yara`` configuration section), service.py (the suite's
engine), samples.py (harmless files that trigger signature-base rules), cli.py.
"""
