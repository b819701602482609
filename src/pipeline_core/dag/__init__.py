"""DAG definitions: the model, graph algorithms, validation, YAML and Python authoring."""
