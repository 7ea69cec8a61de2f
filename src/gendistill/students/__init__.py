"""Students: the tiny networks (architectures/, registered plugins), their tokenizers and teacher-initialized static
embeddings, losses, example stores, building a student, the one trainer, and `StudentClassifier` (classifier.py).

Submodules are imported by name (`gendistill.students.classifier`); this face imports nothing, so the config can
read the architectures' defaults without loading the classifier (and, through its model card, the config again)."""
