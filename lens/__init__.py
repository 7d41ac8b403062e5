"""lens: the runtime of an AnalyticLens vision machine."""

__version__ = "0.1.0"
PROTOCOL_VERSION = "2.1.0"
