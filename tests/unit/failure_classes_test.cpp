// classify_sqlstate over every SQLSTATE class: only the event's own data is ever "ignored".
#include "persistence/store.hpp"

#include <map>
#include <new>
#include <stdexcept>
#include <set>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "persistence/pg_session.hpp"

using namespace kapso;

namespace {

const char* name_of(failure_kind kind) {
  switch (kind) {
    case failure_kind::unavailable: return "unavailable";
    case failure_kind::conflict: return "conflict";
    case failure_kind::bad_data: return "bad_data";
    case failure_kind::stale_reference: return "stale_reference";
    case failure_kind::unexplained: return "unexplained";
  }
  return "?";
}

struct sqlstate_case {
  const char* state;
  const char* condition; // PostgreSQL's name, for the failure message
  failure_kind expected;
};

constexpr auto unavailable = failure_kind::unavailable;
constexpr auto conflict = failure_kind::conflict;
constexpr auto bad_data = failure_kind::bad_data;
constexpr auto stale_reference = failure_kind::stale_reference;
// What one event may cause while the others are stored (a trigger's RAISE,
// an internal error): isolated, and quarantined if it keeps failing.
constexpr auto unexplained = failure_kind::unexplained;

// Every class of PostgreSQL 15's Appendix A, its generic code first, then the
// codes a writer can meet and every code that is handled unlike its class.
const std::vector<sqlstate_case>& sqlstate_table() {
  static const std::vector<sqlstate_case> table{
    {"00000", "successful_completion", unavailable},
    {"01000", "warning", unavailable},
    {"02000", "no_data", unavailable},
    {"03000", "sql_statement_not_yet_complete", unavailable},
    {"08000", "connection_exception", unavailable},
    {"08003", "connection_does_not_exist", unavailable},
    {"08006", "connection_failure", unavailable},
    {"08001", "sqlclient_unable_to_establish_sqlconnection", unavailable},
    {"08P01", "protocol_violation", unavailable},
    {"09000", "triggered_action_exception", unexplained},
    {"0A000", "feature_not_supported", unavailable},
    {"0B000", "invalid_transaction_initiation", unavailable},
    {"0F000", "locator_exception", unavailable},
    {"0L000", "invalid_grantor", unavailable},
    {"0P000", "invalid_role_specification", unavailable},
    {"0Z000", "diagnostics_exception", unavailable},
    {"20000", "case_not_found", unavailable},
    {"21000", "cardinality_violation", unexplained},
    // 22: a value of the event that PostgreSQL refuses.
    {"22000", "data_exception", bad_data},
    {"22001", "string_data_right_truncation", bad_data},
    {"22003", "numeric_value_out_of_range", bad_data},
    {"22007", "invalid_datetime_format", bad_data},
    {"22008", "datetime_field_overflow", bad_data},
    {"22021", "character_not_in_repertoire", bad_data},
    {"22P02", "invalid_text_representation", bad_data},
    {"22P05", "untranslatable_character", bad_data},
    // 23: constraints on the event's values, except a unique key a
    // concurrent writer took (retry now) and a vanished parent row.
    {"23000", "integrity_constraint_violation", bad_data},
    {"23001", "restrict_violation", bad_data},
    {"23502", "not_null_violation", bad_data},
    {"23503", "foreign_key_violation", stale_reference},
    {"23505", "unique_violation", conflict},
    {"23514", "check_violation", bad_data},
    {"23P01", "exclusion_violation", bad_data},
    {"24000", "invalid_cursor_state", unavailable},
    {"25000", "invalid_transaction_state", unavailable},
    {"25006", "read_only_sql_transaction", unavailable},
    {"25P02", "in_failed_sql_transaction", unavailable},
    {"26000", "invalid_sql_statement_name", unavailable},
    {"27000", "triggered_data_change_violation", unexplained},
    {"28000", "invalid_authorization_specification", unavailable},
    {"28P01", "invalid_password", unavailable},
    {"2B000", "dependent_privilege_descriptors_still_exist", unavailable},
    {"2D000", "invalid_transaction_termination", unavailable},
    {"2F000", "sql_routine_exception", unexplained},
    {"34000", "invalid_cursor_name", unavailable},
    {"38000", "external_routine_exception", unexplained},
    {"39000", "external_routine_invocation_exception", unexplained},
    {"3B000", "savepoint_exception", unavailable},
    {"3D000", "invalid_catalog_name", unavailable},
    {"3F000", "invalid_schema_name", unavailable},
    // 40: only serialization failures and deadlocks are worth retrying now.
    {"40000", "transaction_rollback", unavailable},
    {"40001", "serialization_failure", conflict},
    {"40002", "transaction_integrity_constraint_violation", unavailable},
    {"40003", "statement_completion_unknown", unavailable},
    {"40P01", "deadlock_detected", conflict},
    // 42: the schema or the grants, never the event.
    {"42000", "syntax_error_or_access_rule_violation", unavailable},
    {"42501", "insufficient_privilege", unavailable},
    {"42601", "syntax_error", unavailable},
    {"42703", "undefined_column", unavailable},
    {"42883", "undefined_function", unavailable},
    {"42P01", "undefined_table", unavailable},
    {"44000", "with_check_option_violation", unexplained},
    // 53: resources of the server (disk full, memory, connections).
    {"53000", "insufficient_resources", unavailable},
    {"53100", "disk_full", unavailable},
    {"53200", "out_of_memory", unavailable},
    {"53300", "too_many_connections", unavailable},
    {"53400", "configuration_limit_exceeded", unavailable},
    // 54: a value too large for an index or a limit.
    {"54000", "program_limit_exceeded", bad_data},
    {"54001", "statement_too_complex", bad_data},
    {"54011", "too_many_columns", bad_data},
    {"54023", "too_many_arguments", bad_data},
    {"55000", "object_not_in_prerequisite_state", unavailable},
    {"55006", "object_in_use", unavailable},
    {"55P03", "lock_not_available", unavailable},
    // 57: an operator or a timeout stopped the statement.
    {"57000", "operator_intervention", unavailable},
    {"57014", "query_canceled", unavailable},
    {"57P01", "admin_shutdown", unavailable},
    {"57P02", "crash_shutdown", unavailable},
    {"57P03", "cannot_connect_now", unavailable},
    {"57P04", "database_dropped", unavailable},
    {"57P05", "idle_session_timeout", unavailable},
    // 58: outside PostgreSQL (I/O).
    {"58000", "system_error", unavailable},
    {"58030", "io_error", unavailable},
    {"58P01", "undefined_file", unavailable},
    {"58P02", "duplicate_file", unavailable},
    {"72000", "snapshot_too_old", unavailable},
    {"F0000", "config_file_error", unavailable},
    {"HV000", "fdw_error", unavailable},
    {"P0000", "plpgsql_error", unexplained},
    {"P0001", "raise_exception", unexplained},
    {"XX000", "internal_error", unexplained},
    {"XX001", "data_corrupted", unexplained},
    {"XX002", "index_corrupted", unexplained},
  };
  return table;
}

// The classes of PostgreSQL 15's Appendix A.
const std::set<std::string>& every_class() {
  static const std::set<std::string> classes{
    "00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z", "20", "21",
    "22", "23", "24", "25", "26", "27", "28", "2B", "2D", "2F", "34", "38", "39", "3B",
    "3D", "3F", "40", "42", "44", "53", "54", "55", "57", "58", "72", "F0", "HV", "P0",
    "XX"};
  return classes;
}

} // namespace

BOOST_AUTO_TEST_SUITE(failure_classes)

BOOST_AUTO_TEST_CASE(every_sqlstate_class_is_classified_as_documented) {
  std::set<std::string> covered;
  for (const auto& c : sqlstate_table()) {
    BOOST_TEST_CONTEXT(c.state << " " << c.condition) {
      auto got = classify_sqlstate(c.state);
      BOOST_TEST(name_of(got) == name_of(c.expected));
      // The same through the exception a failed statement throws.
      auto through = classify_failure(db_error{c.state, c.condition, false});
      BOOST_TEST(name_of(through) == name_of(c.expected));
    }
    covered.insert(std::string{c.state}.substr(0, 2));
  }
  for (const auto& cls : every_class())
    BOOST_TEST(covered.count(cls) == 1u, "class " << cls << " has no row in the table");
  BOOST_TEST(covered == every_class());
}

BOOST_AUTO_TEST_CASE(only_classes_22_23_and_54_can_make_an_event_ignored) {
  // Every two-character class PostgreSQL could invent later falls back to
  // "unavailable" unless it is one of the three about the event's values or
  // one of the listed classes one event can cause.
  const std::set<std::string> one_event_can_cause{"09", "21", "27", "2F", "38",
                                                  "39", "44", "P0", "XX"};
  const std::string digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  for (char a : digits)
    for (char b : digits) {
      std::string cls{a, b};
      auto got = classify_sqlstate(cls + "000");
      bool about_the_event = cls == "22" || cls == "23" || cls == "54";
      auto expected = about_the_event                       ? bad_data
                      : one_event_can_cause.count(cls) > 0 ? unexplained
                                                            : unavailable;
      BOOST_TEST_CONTEXT("class " << cls) {
        BOOST_TEST(name_of(got) == name_of(expected));
      }
    }
}

BOOST_AUTO_TEST_CASE(malformed_or_missing_sqlstates_are_unavailable) {
  for (const char* state : {"", "2", "2351", "235140", "23 514", "4000"})
    BOOST_TEST_CONTEXT("'" << state << "'") {
      BOOST_TEST(name_of(classify_sqlstate(state)) == name_of(unavailable));
    }
}

BOOST_AUTO_TEST_CASE(a_lost_connection_or_a_non_database_failure_is_never_the_events_data) {
  // A failure that is not an answer from the database is never "ignored";
  // it is isolated like a trigger's error (the writer moves on), and a lost
  // connection or a timeout is the database's.
  // The session died while the server was answering: whatever the code, it
  // is not proof that the event is bad.
  BOOST_TEST(name_of(classify_failure(db_error{"23514", "check", true})) == "unavailable");
  BOOST_TEST(name_of(classify_failure(db_error{"40001", "serialization", true}))
             == "unavailable");
  BOOST_TEST(name_of(classify_failure(db_timeout{"no answer"})) == "unavailable");
  BOOST_TEST(name_of(classify_failure(std::bad_alloc{})) == "unexplained");
  BOOST_TEST(name_of(classify_failure(std::runtime_error{"a bug"})) == "unexplained");
}

BOOST_AUTO_TEST_SUITE_END()
