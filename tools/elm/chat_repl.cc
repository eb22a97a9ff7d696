#include "chat_repl.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#ifdef ELM_HAVE_LIBEDIT
#include <histedit.h>
#endif

namespace elm::cli {

namespace {

volatile sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) {
  g_interrupted = 1;
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// NO_COLOR (https://no-color.org): present and not empty turns colour off.
bool ColourWanted() {
  const char* no = std::getenv("NO_COLOR");
  if (no && *no) return false;
  const char* term = std::getenv("TERM");
  if (term && std::string(term) == "dumb") return false;
  return ::isatty(STDOUT_FILENO) && ::isatty(STDERR_FILENO);
}

struct sigaction g_previous;

}  // namespace

ChatCommand ParseChatCommand(const std::string& line) {
  const std::string t = Trim(line);
  if (t.size() < 2 || t[0] != '/' || t[1] == '/') return ChatCommand::kNone;
  if (t == "/help" || t == "/?") return ChatCommand::kHelp;
  if (t == "/reset" || t == "/clear") return ChatCommand::kReset;
  if (t == "/exit" || t == "/quit" || t == "/bye") return ChatCommand::kExit;
  return ChatCommand::kUnknown;
}

std::string UnescapeMessage(const std::string& line) {
  const size_t b = line.find_first_not_of(" \t");
  if (b != std::string::npos && line.compare(b, 2, "//") == 0) return line.substr(b + 1);
  return line;
}

const char* ChatHelpText() {
  return "Type a message and press Enter; the reply streams as it is generated.\n"
         "  /help            this help\n"
         "  /reset, /clear   start a new conversation (the system prompt stays)\n"
         "  /exit, /quit     leave (or Ctrl-D)\n"
         "  Ctrl-C           stop the reply being written; at the prompt, twice in a row quits\n"
         "  //text           send a message that starts with '/'\n"
         "  a line ending in \\ continues on the next one (when input is not a terminal)\n"
         "When the conversation no longer fits the context, its oldest turns are left out.\n";
}

#ifdef ELM_HAVE_LIBEDIT
struct ChatTerminal::Editor {
  EditLine* el = nullptr;
  History* hist = nullptr;
  FILE* out = stdout;  // where the line is drawn: stdout, or stderr when stdout is piped
  static bool colour;
  static const char* Prompt(EditLine*) {
    // \1 marks the escape sequences libedit must not count as printed characters.
    return colour ? "\1\033[1;32m\1> \1\033[0m\1" : "> ";
  }
  Editor() {
    if (!::isatty(STDOUT_FILENO)) out = stderr;
    el = el_init("elm", stdin, out, stderr);
    hist = history_init();
    HistEvent ev;
    history(hist, &ev, H_SETSIZE, 1000);
    history(hist, &ev, H_SETUNIQUE, 1);
    el_set(el, EL_PROMPT_ESC, &Editor::Prompt, '\1');
    el_set(el, EL_EDITOR, "emacs");
    el_set(el, EL_HIST, history, hist);
    el_source(el, nullptr);  // the user's ~/.editrc, if any
  }
  ~Editor() {
    el_end(el);
    history_end(hist);
  }
};
bool ChatTerminal::Editor::colour = false;
#else
struct ChatTerminal::Editor {};
#endif

ChatTerminal::ChatTerminal() {
  interactive_ = ::isatty(STDIN_FILENO) != 0;
  colour_ = ColourWanted();
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a read at the prompt returns on Ctrl-C
  sigaction(SIGINT, &sa, &g_previous);
#ifdef ELM_HAVE_LIBEDIT
  if (interactive_ && (::isatty(STDOUT_FILENO) || ::isatty(STDERR_FILENO))) {
    Editor::colour = colour_;
    editor_ = std::make_unique<Editor>();
  }
#endif
}

ChatTerminal::~ChatTerminal() {
  editor_.reset();
  sigaction(SIGINT, &g_previous, nullptr);
}

bool ChatTerminal::interrupted() const {
  return g_interrupted != 0;
}
void ChatTerminal::ClearInterrupt() {
  g_interrupted = 0;
}

std::string ChatTerminal::Paint(const char* sgr, const std::string& text) const {
  if (!colour_) return text;
  return std::string("\033[") + sgr + "m" + text + "\033[0m";
}

ChatTerminal::Read ChatTerminal::ReadMessage(std::string* line) {
  line->clear();
  ClearInterrupt();
#ifdef ELM_HAVE_LIBEDIT
  if (editor_) {
    int count = 0;
    const char* got = el_gets(editor_->el, &count);
    if (!got) {
      if (count < 0 && (errno == EINTR || interrupted())) {
        std::fputs("^C\n", editor_->out);
        std::fflush(editor_->out);
        return Read::kInterrupted;
      }
      std::fputc('\n', editor_->out);  // Ctrl-D: leave the cursor on a fresh line
      return Read::kEnd;
    }
    *line = got;
    while (!line->empty() && (line->back() == '\n' || line->back() == '\r')) line->pop_back();
    if (!Trim(*line).empty()) {
      HistEvent ev;
      history(editor_->hist, &ev, H_ENTER, line->c_str());
    }
    return Read::kLine;
  }
#endif
  if (interactive_) {
    std::fputs(Paint("1;32", "> ").c_str(), stderr);
    std::fflush(stderr);
  }
  std::string part;
  bool got = false;
  while (std::getline(std::cin, part)) {
    got = true;
    if (!part.empty() && part.back() == '\\') {
      part.pop_back();
      *line += part + "\n";
      continue;
    }
    *line += part;
    break;
  }
  if (!got && interrupted()) {
    std::cin.clear();
    return Read::kInterrupted;
  }
  return got ? Read::kLine : Read::kEnd;
}

}  // namespace elm::cli
