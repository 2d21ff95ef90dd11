"""Where forward passes run: in this process (``local``), in one worker process per GPU
(``device_pool``), or on a Ray cluster (``ray``); ``chunk_overlap`` keeps a device busy while the
next chunk is prepared."""
