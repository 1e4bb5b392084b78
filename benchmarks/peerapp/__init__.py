"""The comparison processes' app: ``benchapp``'s columns and tables without django_cacheaside."""
