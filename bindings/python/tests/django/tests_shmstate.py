"""Django's own cache test suite (BaseCacheTests) against shmstate.django.ShmStateCache.

This module is copied into the `cache` test app of Django's source tree (tests/cache/) and run
with Django's tests/runtests.py (see ../../ci.sh). Every test that cannot apply is skipped by
name, with the reason, in SKIPPED below (also listed in the README).
"""

import os
import unittest

from django.test import TestCase, override_settings

from cache.tests import BaseCacheTests, caches_setting_for_tests

import shmstate

REGION = "django-cache-tests-%d" % os.getpid()

# Test name -> why it cannot apply to this backend. Empty when every test applies.
SKIPPED = {}


def _skip_by_name(cls):
    for name, reason in SKIPPED.items():
        setattr(cls, name, unittest.skip(reason)(getattr(cls, name)))
    return cls


@_skip_by_name
@override_settings(
    CACHES=caches_setting_for_tests(
        BACKEND="shmstate.django.ShmStateCache",
        LOCATION=REGION,
    )
)
class ShmStateCacheTests(BaseCacheTests, TestCase):
    # incr() of a value that is not a number (a pickled None) raises TypeError, as Django's
    # in-memory backend does.
    incr_decr_type_error = TypeError

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        try:
            shmstate.Store.unlink(REGION)
        except shmstate.NotFound:
            pass

    def test_region_is_shared_memory(self):
        """The cache really is the named shared-memory region (not a per-process dict)."""
        from django.core.cache import cache

        cache.set("shared-check", {"a": 1})
        other = shmstate.Store.open(REGION)  # a second, independent handle
        self.assertEqual(len(other), len(cache.store))
        self.assertTrue(other.verify())


@_skip_by_name
@override_settings(
    CACHES=caches_setting_for_tests(
        BACKEND="shmstate.django.ShmStateCache",
        LOCATION="",  # anonymous region, created in this process
    )
)
class ShmStateAnonymousCacheTests(BaseCacheTests, TestCase):
    incr_decr_type_error = TypeError
