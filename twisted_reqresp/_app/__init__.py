"""
The application layer: the twistd plugin's options and service (``tap``),
the default service it serves (``service``), and the ``reqresp`` command
line (``cli``, ``bench``).  It may import every layer below it.
"""
