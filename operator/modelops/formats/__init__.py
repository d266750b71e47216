"""What one runtime writes and another reads (file formats, the artifact digest, the drift logger URL):
the only modules two runtimes both import.

Standard library only, so that every image can import them whatever extra it installed.
"""
