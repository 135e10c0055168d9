"""Downsampling: raw chunks of the column store into the ``<ds>_ds_<min>`` datasets.

``periods`` has the per-kind downsamplers (numpy over many series at once), ``kinds`` decides a
series' kind, ``job`` reads a shard's raw chunks for a window, downsamples them and writes the
downsampled chunks and part keys (:func:`~filodb.downsample.job.downsample_shard`, the unit of
work of the in-process run, the cluster's periodic run and Spark). Rules: ``docs/downsampling.md``.
"""
