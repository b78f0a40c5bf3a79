"""semcodec-bench: reference evaluation harness for semantic image compression.

Data flows one way: dataset -> sample -> codec.encode -> bytes -> codec.decode ->
reconstruction -> metrics -> store -> report.
"""

__version__ = "0.1.0"
