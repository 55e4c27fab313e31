"""The strict environment parsers: a deployment typo must stop start-up with a message that
names the variable, never fall back to a silent default."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_database,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

# --- env_str ------------------------------------------------------------------------------


def test_env_str_returns_the_value_without_surrounding_spaces():
    assert env_str("SECRET_KEY", environ={"SECRET_KEY": "  s3cret \n"}) == "s3cret"


@pytest.mark.parametrize("environ", [{}, {"SECRET_KEY": ""}, {"SECRET_KEY": "   "}])
def test_env_str_treats_unset_and_blank_alike_and_uses_the_default(environ):
    assert env_str("SECRET_KEY", "fallback", environ=environ) == "fallback"


@pytest.mark.parametrize("environ", [{}, {"SECRET_KEY": "  "}])
def test_env_str_without_a_default_demands_the_variable(environ):
    with pytest.raises(ImproperlyConfigured, match=r"^SECRET_KEY must be set$"):
        env_str("SECRET_KEY", environ=environ)


def test_env_str_accepts_an_empty_default():
    # base.py reads SECRET_KEY with "" as default: an empty default is a default, not "unset".
    assert env_str("SECRET_KEY", "", environ={}) == ""


def test_the_parsers_read_the_process_environment_when_no_mapping_is_given(monkeypatch):
    monkeypatch.setenv("COUPONS_TEST_ONLY_VARIABLE", "from-os")
    assert env_str("COUPONS_TEST_ONLY_VARIABLE") == "from-os"
    monkeypatch.delenv("COUPONS_TEST_ONLY_VARIABLE")
    assert env_str("COUPONS_TEST_ONLY_VARIABLE", "default") == "default"


# --- env_bool -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", " On "])
def test_env_bool_reads_true_values(raw):
    assert env_bool("DEBUG", environ={"DEBUG": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", " Off "])
def test_env_bool_reads_false_values(raw):
    assert env_bool("DEBUG", environ={"DEBUG": raw}) is False


@pytest.mark.parametrize("raw", ["ture", "flase", "2", "y", "enabled", "是"])
def test_env_bool_refuses_a_typo_and_names_the_variable(raw):
    with pytest.raises(ImproperlyConfigured) as caught:
        env_bool("DEBUG", False, environ={"DEBUG": raw})
    message = str(caught.value)
    assert message.startswith(f"DEBUG={raw!r} is not a boolean")
    assert "true/false" in message


def test_env_bool_uses_the_default_only_when_unset():
    assert env_bool("DEBUG", True, environ={}) is True
    assert env_bool("DEBUG", True, environ={"DEBUG": "off"}) is False


def test_env_bool_without_a_default_demands_the_variable():
    with pytest.raises(ImproperlyConfigured, match=r"^DEBUG must be set$"):
        env_bool("DEBUG", environ={})


# --- env_int ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (" 7 ", 7), ("-3", -3), ("0", 0)])
def test_env_int_reads_whole_numbers(raw, expected):
    assert env_int("WORKERS", environ={"WORKERS": raw}) == expected


@pytest.mark.parametrize("raw", ["4.2", "abc", "1e3", "ten", "0x10"])
def test_env_int_refuses_what_is_not_a_whole_number(raw):
    with pytest.raises(ImproperlyConfigured, match=rf"^WORKERS='{raw}' is not an integer$"):
        env_int("WORKERS", 1, environ={"WORKERS": raw})


def test_env_int_enforces_the_minimum():
    assert env_int("DB_CONN_MAX_AGE", minimum=0, environ={"DB_CONN_MAX_AGE": "0"}) == 0
    with pytest.raises(ImproperlyConfigured, match=r"^DB_CONN_MAX_AGE=-1 must be at least 0$"):
        env_int("DB_CONN_MAX_AGE", 0, minimum=0, environ={"DB_CONN_MAX_AGE": "-1"})


def test_env_int_default_and_missing():
    assert env_int("WORKERS", 4, environ={}) == 4
    with pytest.raises(ImproperlyConfigured, match=r"^WORKERS must be set$"):
        env_int("WORKERS", environ={"WORKERS": " "})


# --- env_list -----------------------------------------------------------------------------


def test_env_list_splits_on_commas_and_strips_each_item():
    environ = {"ALLOWED_HOSTS": " coupons.example.cn, 10.0.0.5 ,localhost"}
    assert env_list("ALLOWED_HOSTS", environ=environ) == ["coupons.example.cn", "10.0.0.5", "localhost"]


def test_env_list_with_one_item():
    assert env_list("ALLOWED_HOSTS", environ={"ALLOWED_HOSTS": "a.example.cn"}) == ["a.example.cn"]


@pytest.mark.parametrize("raw", ["a.example.cn,,b.example.cn", "a.example.cn,", ",a.example.cn", "a, ,b"])
def test_env_list_refuses_an_empty_item(raw):
    with pytest.raises(ImproperlyConfigured, match=r"^ALLOWED_HOSTS=.* has an empty item$"):
        env_list("ALLOWED_HOSTS", [], environ={"ALLOWED_HOSTS": raw})


def test_env_list_returns_a_copy_of_the_default():
    default = ["127.0.0.1"]
    hosts = env_list("ALLOWED_HOSTS", default, environ={})
    hosts.append("evil.example")
    assert default == ["127.0.0.1"]


def test_env_list_without_a_default_demands_the_variable():
    with pytest.raises(ImproperlyConfigured, match=r"^ALLOWED_HOSTS must be set$"):
        env_list("ALLOWED_HOSTS", environ={})


# --- parse_database_url / env_database ----------------------------------------------------


def test_a_full_postgres_url_becomes_a_databases_entry():
    url = "postgresql://coupons:p%40ss%2Fword@db.internal:6543/coupons_prod?sslmode=require&connect_timeout=5"
    assert parse_database_url(url) == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "coupons_prod",
        "USER": "coupons",
        "PASSWORD": "p@ss/word",
        "HOST": "db.internal",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require", "connect_timeout": "5"},
    }


def test_a_minimal_postgres_url_leaves_user_password_and_port_empty():
    assert parse_database_url("postgres://localhost/coupons") == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "coupons",
        "USER": "",
        "PASSWORD": "",
        "HOST": "localhost",
        "PORT": "",
        "OPTIONS": {},
    }


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:///db.sqlite3", "db.sqlite3"),
        ("sqlite:///var/db.sqlite3", "var/db.sqlite3"),
        ("sqlite:////srv/coupons/db.sqlite3", "/srv/coupons/db.sqlite3"),
        ("sqlite:////srv/coupons/with%20space.db", "/srv/coupons/with space.db"),
    ],
)
def test_sqlite_urls_with_relative_and_absolute_paths(url, name):
    assert parse_database_url(url) == {"ENGINE": "django.db.backends.sqlite3", "NAME": name}


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://localhost/db.sqlite3"])
def test_a_sqlite_url_without_a_path_or_with_a_host_is_refused(url):
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL for SQLite must look like sqlite:///"):
        parse_database_url(url)


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgis://h/db", "db.sqlite3", ""])
def test_an_unknown_scheme_is_refused_with_the_known_ones(url):
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_database_url(url)
    assert str(caught.value).startswith("DATABASE_URL has scheme")
    assert "use one of postgres, postgresql, sqlite" in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://u@h:notaport/db", "postgresql://u@h:99999/db"])
def test_a_bad_port_is_refused(url):
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL has an invalid port$"):
        parse_database_url(url)


@pytest.mark.parametrize("url", ["postgresql://u:p@h:5432", "postgresql://u:p@h:5432/", "postgres://h"])
def test_a_postgres_url_without_a_database_name_is_refused(url):
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL names no database$"):
        parse_database_url(url)


def test_the_error_names_the_variable_it_came_from():
    with pytest.raises(ImproperlyConfigured, match=r"^REPLICA_URL names no database$"):
        env_database("REPLICA_URL", environ={"REPLICA_URL": "postgresql://h/"})


def test_env_database_prefers_the_variable_over_the_default():
    entry = env_database(environ={"DATABASE_URL": "postgresql://h/live"}, default="sqlite:///x.db")
    assert entry["ENGINE"] == "django.db.backends.postgresql"
    assert entry["NAME"] == "live"


def test_env_database_falls_back_to_the_default_when_unset_or_blank():
    for environ in ({}, {"DATABASE_URL": "  "}):
        assert env_database(environ=environ, default="sqlite:///x.db") == {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": "x.db",
        }


def test_env_database_without_a_default_demands_the_variable():
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL must be set$"):
        env_database(environ={})
