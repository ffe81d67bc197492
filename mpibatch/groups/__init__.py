"""Worker groups' transport: one TCP connection (pyzmq) between the main job's rank 0, the coordinator, and
the rank 0 of each worker group that joins from another allocation (its relay). Read in order: wire.py (the
join key and address files in the state folder, HMAC-signed framing that is verified before anything is
decoded), hub.py (the coordinator's side: one ROUTER socket, joins, heartbeats, groups lost or gone) and
link.py (the group's side: one DEALER socket). Messages are opaque Python tuples: this folder knows nothing of
the engine. These modules import the standard library, pyzmq, and of mpibatch at most the vocabulary and
config (for names); engine and cli import them. Nothing is imported here.
"""
