"""`mpibatch demo`: the seed's digit-identification job, offline (digits rendered with Pillow,
a small Keras CNN trained on other rendered digits)."""
