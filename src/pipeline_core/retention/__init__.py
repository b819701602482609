"""History retention: cleaning up finished runs past an age, in short transactions, with an
optional archive, by hand (``pipeline-core db clean``) or on a schedule (``--retention``)."""
