"""Shared test support: tools, instances, signers, the network guard.

Importable from every test module as ``support`` (pytest puts ``tests/`` on ``sys.path``
because ``tests/conftest.py`` lives there); no test edits ``sys.path`` itself.
"""
