"""Benchmarks: events per second of every engine on the zoo (`python -m benchmarks.run`) and HDF5 streaming
(`python -m benchmarks.stream_h5`); figures in benchmarks/README.md."""
