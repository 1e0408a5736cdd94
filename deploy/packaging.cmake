# The Debian package: install() rules and CPack. `cmake --build build --target deb` (or
# `cpack -G DEB --config build/CPackConfig.cmake`) writes build/package/kapso-ingest_*.deb.

if(PROJECT_VERSION)
  set(KAPSO_PACKAGE_VERSION ${PROJECT_VERSION})
else()
  set(KAPSO_PACKAGE_VERSION 0.1.0)
endif()

# The man page is written from the binary's own --long-help, so it cannot drift from it.
set(KAPSO_MANPAGE ${CMAKE_BINARY_DIR}/kapso-ingest.1.gz)
add_custom_command(
  OUTPUT ${KAPSO_MANPAGE}
  COMMAND ${CMAKE_SOURCE_DIR}/deploy/manpage.sh $<TARGET_FILE:kapso-ingest> ${KAPSO_MANPAGE}
          ${KAPSO_PACKAGE_VERSION}
  DEPENDS kapso-ingest ${CMAKE_SOURCE_DIR}/deploy/manpage.sh
  COMMENT "Writing kapso-ingest(1) from kapso-ingest --long-help")
add_custom_target(kapso-manpage ALL DEPENDS ${KAPSO_MANPAGE})

# So is the commented /etc/kapso-ingest/caf-application.ini, from --help-ini.
set(KAPSO_INI ${CMAKE_BINARY_DIR}/packaged-caf-application.ini)
add_custom_command(
  OUTPUT ${KAPSO_INI}
  COMMAND $<TARGET_FILE:kapso-ingest> --help-ini > ${KAPSO_INI}
  DEPENDS kapso-ingest
  COMMENT "Writing caf-application.ini from kapso-ingest --help-ini")
add_custom_target(kapso-ini ALL DEPENDS ${KAPSO_INI})

set(DEPLOY ${CMAKE_SOURCE_DIR}/deploy)
install(TARGETS kapso-ingest RUNTIME DESTINATION bin)
install(FILES ${DEPLOY}/kapso-ingest.service DESTINATION /lib/systemd/system)
install(FILES ${KAPSO_INI} DESTINATION /etc/kapso-ingest RENAME caf-application.ini)
# Secrets go here; postinst gives it the group kapso-ingest.
install(FILES ${DEPLOY}/environment DESTINATION /etc/kapso-ingest
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(FILES ${KAPSO_MANPAGE} DESTINATION share/man/man1)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION share/doc/kapso-ingest)
install(FILES ${DEPLOY}/haproxy.cfg
              ${DEPLOY}/prometheus/kapso-ingest.rules.yml
              ${DEPLOY}/grafana/kapso-ingest.json
        DESTINATION share/doc/kapso-ingest/examples)

# cpack installs what is built (the `deb` target builds it) instead of building
# every target, tests and benchmarks included.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kapso-ingest)
set(CPACK_PACKAGE_VERSION ${KAPSO_PACKAGE_VERSION})
set(CPACK_PACKAGE_VENDOR "kapso-ingest")
set(CPACK_PACKAGE_CONTACT "kapso-ingest maintainers <kapso-ingest@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Kapso WhatsApp webhooks into a PostgreSQL team inbox")
set(CPACK_PACKAGE_DESCRIPTION
    "kapso-ingest receives Kapso's WhatsApp webhooks and writes contacts, conversations and\n\
messages into PostgreSQL, answering only after the data is committed (or spooled to disk\n\
during a database outage). Runs as the systemd service kapso-ingest.service.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/package)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime libraries from dpkg-shlibdeps (libpq, CAF, OpenSSL, libsystemd, ...).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql (>= 15), haproxy, pg-auto-failover-cli, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${DEPLOY}/debian/postinst ${DEPLOY}/debian/prerm ${DEPLOY}/debian/postrm
    ${DEPLOY}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)

add_custom_target(deb
  COMMAND ${CMAKE_CPACK_COMMAND} -G DEB --config ${CMAKE_BINARY_DIR}/CPackConfig.cmake
  DEPENDS kapso-ingest kapso-manpage
  WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
  COMMENT "Building the Debian package in ${CMAKE_BINARY_DIR}/package")
