# Neutron API under mod_wsgi WITHOUT workerid: the "before" case of the end-to-end proof.
# Equivalent to Ubuntu's debian/neutron-api.wsgi (`from neutron.wsgi.api import application`),
# plus the config location of tests/e2e/neutron_env.sh (NEUTRON_E2E_ETC).
import os

# neutron/server/__init__.py:_get_config_files() reads OS_NEUTRON_CONFIG_DIR (default /etc/neutron/)
# and OS_NEUTRON_CONFIG_FILES (';'-separated, default "neutron.conf;plugins/ml2/ml2_conf.ini").
# Apache's SetEnv does not reach os.environ under mod_wsgi, so set it here, before the import.
os.environ.setdefault("OS_NEUTRON_CONFIG_DIR", "@ETC@")  # lab.write_plain_wsgi fills it in

from neutron.wsgi.api import application  # noqa: E402,F401
