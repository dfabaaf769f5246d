"""File schemas the readers and writers share: ``caffe.proto`` and the
``caffe_pb2`` module generated from it (``make proto``); ``msnhnet``, MsnhNet's
two files as its parser and builder read them (for the MsnhNet reader and runner)."""
