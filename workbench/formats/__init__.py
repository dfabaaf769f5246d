"""File schemas the readers and writers share: ``caffe.proto`` and the
``caffe_pb2`` module generated from it (``make proto``)."""
