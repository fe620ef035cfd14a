// owl's chat page (issue #21): served by `owl serve` from the binary (no key needed for the
// page itself, a Content-Security-Policy on it), and driven in headless Chromium by
// playwright-core (tests/server/web_page.mjs) against real servers with stories260K. Chromium
// comes from Debian (installed here when missing); playwright-core is pinned and installed from
// npm. The screenshots of each state are kept in build/test-artifacts/web/.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "server/npm_client.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const char* kKey = "sk-web-test";

// Debian's chromium, installed with apt when missing (as root, or through sudo).
void install_chromium() {
  if (fs::exists("/usr/bin/chromium")) return;
  const std::string sudo = ::geteuid() == 0 ? "" : "sudo ";
  const std::string cmd = "DEBIAN_FRONTEND=noninteractive " + sudo + "apt-get install -y -q chromium > " +
                          shell_quote(npm_prefix() + "/chromium-install.log") + " 2>&1";
  if (std::system(cmd.c_str()) != 0 || !fs::exists("/usr/bin/chromium"))
    throw std::runtime_error("cannot install chromium with apt-get: " +
                             read_file(npm_prefix() + "/chromium-install.log"));
}

fs::path artifacts_dir() { return fs::path(OWL_BINARY).parent_path() / "test-artifacts" / "web"; }

class WebPage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string model = shared_path("models/stories260K/stories260K-f32.gguf");
    // A context of 2048 leaves room for a few long answers in one conversation.
    server_ = new ServerProcess(model, {"--kv-type", "f32", "--ctx", "2048"});
    keyed_ = new ServerProcess(model, {"--kv-type", "f32", "--api-key", kKey});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete keyed_;
    server_ = keyed_ = nullptr;
  }
  static ServerProcess* server_;
  static ServerProcess* keyed_;
};
ServerProcess* WebPage::server_ = nullptr;
ServerProcess* WebPage::keyed_ = nullptr;

TEST_F(WebPage, ServedFromTheBinaryWithoutAKey) {
  HttpResult r = http_get(keyed_->port(), "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(r.header("content-security-policy").find("script-src 'self'"), std::string::npos);
  EXPECT_NE(r.body.find("<script src=\"/web/app.js\""), std::string::npos);
  EXPECT_EQ(r.body, read_file(std::string(OWL_SOURCE_DIR) + "/web/index.html"));
  r = http_get(keyed_->port(), "/web/vendor/purify.min.js");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/javascript; charset=utf-8");
  EXPECT_NE(r.body.find("DOMPurify"), std::string::npos);
  EXPECT_EQ(http_get(keyed_->port(), "/web/no-such-file.js").status, 401);  // not a page file: the API's rules
  EXPECT_EQ(http_get(server_->port(), "/web/no-such-file.js").status, 404);
  EXPECT_EQ(http_get(keyed_->port(), "/v1/models").status, 401);  // the API still wants the key
}

TEST_F(WebPage, InHeadlessChromium) {
  install_chromium();
  install_npm_package("playwright-core", "1.65.1");
  const fs::path out = artifacts_dir();
  fs::remove_all(out);
  fs::create_directories(out);
  json r = run_node_script("web_page.mjs", {std::to_string(server_->port()), std::to_string(keyed_->port()), out});

  EXPECT_EQ(r["model"], "stories260K-f32");
  EXPECT_EQ(r["foreign_requests"], 0);  // nothing from a CDN
  EXPECT_EQ(r["context"], "context 0 / 2048 tokens");
  // The answer streamed in and was measured.
  EXPECT_GE(r["growth_steps"].get<int>(), 1) << r.dump();
  EXPECT_FALSE(r["first_answer"].get<std::string>().empty());
  // Max tokens from the settings reached the server.
  EXPECT_TRUE(r["stats"].get<std::string>().starts_with("40 tokens · ")) << r["stats"];
  EXPECT_NE(r["stats"].get<std::string>().find("tokens/s"), std::string::npos) << r["stats"];
  EXPECT_TRUE(r["speed"].get<std::string>().starts_with("last answer ")) << r["speed"];
  EXPECT_NE(r["context_after"], r["context"]);
  EXPECT_EQ(r["title"], "Once upon a time");
  // The stop button ended a long answer half-way.
  EXPECT_NE(r["stopped_stats"].get<std::string>().find("stopped"), std::string::npos) << r["stopped_stats"];
  EXPECT_GT(r["stopped_text"].get<std::string>().size(), 20u);
  // Slowed down, the answer was seen growing piece by piece before the stop.
  EXPECT_GE(r["stopped_growth_steps"].get<int>(), 2) << r.dump();
  EXPECT_EQ(r["regenerated_count"][0], r["regenerated_count"][1]);
  EXPECT_EQ(r["regenerated_stats"].get<std::string>().find("stopped"), std::string::npos);
  EXPECT_EQ(r["edited"], json::array({"user", "assistant"}));
  EXPECT_EQ(r["edited_text"], "Once upon a time there was a cat");
  EXPECT_EQ(r["renamed"], "Cat story");
  EXPECT_EQ(r["exported"], json::parse(R"([{"title":"Cat story","messages":2}])"));
  EXPECT_EQ(r["after_delete"], 0);
  EXPECT_EQ(r["imported"], json::array({"Cat story"}));
  EXPECT_EQ(r["reloaded_titles"], json::array({"Cat story"}));
  EXPECT_EQ(r["reloaded_messages"], 2);
  EXPECT_NE(r["reloaded_context"], "context 0 / 2048 tokens");  // the context use travelled with it
  // Hostile Markdown rendered without running anything; the rest of it still rendered.
  EXPECT_TRUE(r["xss"].is_null()) << r["xss"];
  EXPECT_EQ(r["xss_dom"]["scripts"], 0);
  EXPECT_EQ(r["xss_dom"]["handlers"], 0);
  EXPECT_EQ(r["xss_dom"]["js_links"], 0);
  EXPECT_EQ(r["xss_dom"]["images"], 1);
  EXPECT_EQ(r["xss_dom"]["link_text"], "click me");
  EXPECT_EQ(r["xss_dom"]["code_blocks"], 1);
  EXPECT_EQ(r["xss_dom"]["copy_buttons"], 1);
  EXPECT_TRUE(r["reasoning"]["summary"].get<std::string>().starts_with("Reasoning · 7 tokens")) << r["reasoning"];
  EXPECT_EQ(r["reasoning"]["open"], false);  // collapsed until clicked
  EXPECT_EQ(r["reasoning"]["body"], "<p>The user wants <strong>a fox</strong>.</p>");
  EXPECT_EQ(r["reasoning"]["answer"], "Once there was a fox.");
  // Math typeset by KaTeX (served by owl, fonts too): one display formula, one inline; prices stay text.
  EXPECT_EQ(r["reasoning"]["math"], 2);
  EXPECT_EQ(r["reasoning"]["display_math"], 1);
  EXPECT_EQ(r["reasoning"]["tex"], json::parse(R"(["E=mc2", "v2"])"));  // as typeset
  EXPECT_EQ(r["reasoning"]["dollars"], true);
  EXPECT_TRUE(r["reasoning"]["stats"].get<std::string>().starts_with("12 tokens · ")) << r["reasoning"];
  EXPECT_EQ(r["page_errors"], json::array());
  EXPECT_EQ(r["keyed_model"], "stories260K-f32");
  for (const char* shot : {"01-loaded", "02-settings", "03-answered", "04-streaming", "05-stopped", "06-regenerated",
                           "07-reloaded", "08-xss", "09-reasoning", "10-api-key"}) {
    const fs::path png = out / (std::string(shot) + ".png");
    ASSERT_TRUE(fs::exists(png)) << png;
    EXPECT_EQ(read_file(png.string()).substr(1, 3), "PNG") << png;
  }
}

}  // namespace
}  // namespace owl::test
