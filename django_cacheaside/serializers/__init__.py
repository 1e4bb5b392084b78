"""Serializers turn a row's field values into bytes and back.

The default, :class:`~django_cacheaside.serializers.msgpack.MsgpackSerializer`, decodes plain data only,
so a poisoned cache cannot run code. :class:`~django_cacheaside.serializers.pickle.PickleSerializer` is
there for values msgpack cannot express, and only for a Redis you trust.
"""
