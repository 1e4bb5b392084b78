import pytest
from tests.factories import ArticleFactory
from tests.testapp.models import Article
from django_cacheaside.testing import count_round_trips

@pytest.mark.django_db(transaction=True)
def test_smoke(django_assert_num_queries):
    a = ArticleFactory()
    with django_assert_num_queries(1):
        got = Article.cached.get(pk=a.pk)
    assert got == a
    with django_assert_num_queries(0), count_round_trips() as t:
        got = Article.cached.get(pk=a.pk)
    assert t.count == 1
    assert got.title == a.title and got._state.db == "default" and not got._state.adding
    a.title = "new"; a.save()
    assert Article.cached.get(pk=a.pk).title == "new"
