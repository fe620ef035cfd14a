// Across a network, not only shared memory: three network namespaces joined by veth links to a
// bridge play three hosts (10.231.7.1-3). mpirun starts in the first and reaches the others
// through an rsh agent that enters the namespace of the address it is given (as ssh would enter
// a host); Open MPI's TCP transport (--mca btl tcp,self) carries the activations and expert rows
// over those addresses only. The logits equal the single process's, and the veth counters show
// the bytes went through the links. Needs root and iproute2 (CI runs as root).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "dist/mpi_util.h"

namespace owl::test {
namespace {

int sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the namespace test needs root (CI runs as root)";
    ASSERT_EQ(sh("command -v ip >/dev/null"), 0) << "iproute2 (ip) is missing; scripts/install-deps.sh installs it";
    prefix_ = "owl" + std::to_string(::getpid()) + "n";
    std::string s = "set -e\nip netns add " + ns("br") + "\nip -n " + ns("br") + " link add br0 type bridge\nip -n " +
                    ns("br") + " link set br0 up\n";
    for (int i = 0; i < 3; ++i) {
      const std::string host = ns(std::to_string(i)), addr = "10.231.7." + std::to_string(i + 1);
      s += "ip netns add " + host + "\n";
      s +=
          "ip link add v" + std::to_string(i) + " netns " + ns("br") + " type veth peer name eth0 netns " + host + "\n";
      s += "ip -n " + ns("br") + " link set v" + std::to_string(i) + " master br0 up\n";
      s += "ip -n " + host + " addr add " + addr + "/24 dev eth0\nip -n " + host + " link set eth0 up\n";
      s += "ip -n " + host + " link set lo up\n";
    }
    created_ = true;
    ASSERT_EQ(sh(s), 0) << "creating the namespaces failed";
    dir_ = temp_dir();
    agent_ = dir_ + "/netns-agent.sh";
    // Each "host" keeps Open MPI's session files in a folder of its own, as separate hosts would.
    std::ofstream(agent_) << "#!/bin/sh\n# host 10.231.7.N is namespace " << prefix_ << "(N-1)\nhost=$1; shift\n"
                          << "n=$((${host##*.} - 1))\nexport TMPDIR=" << dir_ << "/host$n\nmkdir -p $TMPDIR\n"
                          << "exec ip netns exec " << prefix_ << "$n /bin/sh -c \"$*\"\n";
    ASSERT_EQ(sh("chmod +x " + shell_quote(agent_)), 0);
    std::ofstream(dir_ + "/hosts") << "10.231.7.1 slots=1\n10.231.7.2 slots=1\n10.231.7.3 slots=1\n";
  }
  void TearDown() override {
    if (!created_) return;
    for (const char* n : {"0", "1", "2", "br"}) sh("ip netns del " + ns(n) + " 2>/dev/null");
  }

  std::string ns(const std::string& name) const { return prefix_ + name; }

  // Bytes the bridge received from host i's link so far.
  long long received_from(int i) const {
    const std::string f = dir_ + "/rx";
    sh("ip netns exec " + ns("br") + " cat /sys/class/net/v" + std::to_string(i) + "/statistics/rx_bytes >" +
       shell_quote(f));
    return std::stoll(read_file(f));
  }

  // `owl ARGS` on 3 ranks, one per namespace, over TCP only.
  RunResult run_across(const std::vector<std::string>& args) const {
    const std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    sh("mkdir -p " + shell_quote(dir_ + "/host0"));
    std::string cmd = "TMPDIR=" + shell_quote(dir_ + "/host0") + " timeout 120 ip netns exec " + ns("0") +
                      " mpirun --allow-run-as-root -q --hostfile " + shell_quote(dir_ + "/hosts") +
                      " --mca plm_rsh_agent " + shell_quote(agent_) +
                      " --mca btl tcp,self --mca btl_tcp_if_include 10.231.7.0/24"
                      " --mca oob_tcp_if_include 10.231.7.0/24 -n 3 " +
                      shell_quote(OWL_BINARY);
    for (const auto& a : args) cmd += " " + shell_quote(a);
    RunResult r;
    r.exit_code = sh(cmd + " </dev/null >" + shell_quote(out) + " 2>" + shell_quote(err));
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  std::string prefix_, dir_, agent_;
  bool created_ = false;
};

TEST_F(NetnsTest, ThreeHostsOverTcpEqualOneProcessForBothSplits) {
  const std::string model = shared_path("golden/qwen3moe/q4_k_m.gguf");
  const std::string tokens = "5,77,300,12,499,1,260,31,8,150,42,7";
  const std::string single = dir_ + "/single.f32";
  RunResult one = run_owl({"logits", model, "--tokens", tokens, "--out", single, "--greedy", "4", "-t", "1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  for (const char* split : {"layers", "experts"}) {
    SCOPED_TRACE(split);
    const long long before = received_from(1) + received_from(2);
    const std::string out = dir_ + "/" + split + ".f32";
    RunResult r =
        run_across({"logits", model, "--tokens", tokens, "--out", out, "--greedy", "4", "-t", "1", "--split", split});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, one.out);
    EXPECT_TRUE(read_file(out) == read_file(single)) << "logits differ from the single process";
    // At least the hidden states of the prompt and of each decoded token left ranks 1 and 2.
    EXPECT_GT(received_from(1) + received_from(2) - before, 12 * 256 * 4);
  }
}

}  // namespace
}  // namespace owl::test
