"""Drop-in compatibility with the AnalyticLens Flask vision machine (SPEC §4b): its routes under
/api/..., its Socket.IO live view, its tool JSON and its `.alog` inspection logs, served by the
control service beside /api/v1 and translated to the native model (the engine is not forked)."""
