"""The class names of the prepared data sets, in label order: the TFDS builders label with them and the
paper's tasks (``paenet.tasks.paper``) carry them, without importing TFDS."""

ADIENCE_AGE_GROUPS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
ADIENCE_AGE_NAMES = tuple(f"{lo}-{hi}" for lo, hi in ADIENCE_AGE_GROUPS)
ADIENCE_GENDERS = ("male", "female")
AFFECTNET_EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
FOTW_GENDERS = ("male", "female", "other")
