// SPDX-License-Identifier: GPL-2.0-or-later
// Two functions Slurm's accounting_storage_slurmdbd.so plugin calls on its error and debug
// paths but that the public libslurm.so does not export (Slurm's own commands link a private
// library that has them). libslurm loads the plugin with dlopen() and lazy binding, so without
// these a client process gets "symbol lookup error: ... undefined symbol" and exits 127 the
// first time slurmdbd fails a request or goes away mid-conversation.
//
// They are linked into keystoned and keystonectl and exported from the executable
// (Makefile.am: --export-dynamic-symbol), where the plugin's lookup finds them. They only name a
// message type for Slurm's log lines, so a number is enough.
#include <cstdint>
#include <cstdio>

namespace {

char *message_type_text(const char *what, unsigned number) {
    // Slurm prints the text right away and never frees it: one buffer per thread.
    thread_local char buf[48];
    std::snprintf(buf, sizeof buf, "%s %u", what, number);
    return buf;
}

} // namespace

extern "C" {

// slurmdbd_defs.h: char *slurmdbd_msg_type_2_str(slurmdbd_msg_type_t msg_type, int get_enum);
// the enum is passed as an int.
char *slurmdbd_msg_type_2_str(int msg_type, int get_enum);
char *slurmdbd_msg_type_2_str(int msg_type, int /*get_enum*/) {
    return message_type_text("DBD message type", static_cast<unsigned>(msg_type));
}

// slurm_protocol_defs.h: char *rpc_num2string(uint16_t opcode);
char *rpc_num2string(std::uint16_t opcode);
char *rpc_num2string(std::uint16_t opcode) {
    return message_type_text("RPC", opcode);
}

} // extern "C"
