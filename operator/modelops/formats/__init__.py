"""File formats one runtime writes and another reads: the only modules two runtimes both import.

Standard library only, so that every image can import them whatever extra it installed.
"""
