"""Face detection and FaceNet-style alignment: one face (``face_crop``) or a whole folder
(``directory``, behind ``python -m data_prep.align``)."""
